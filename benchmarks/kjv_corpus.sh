#!/bin/sh
# Builds the larger-corpus benchmark text: the King James Bible from Debian's
# bible-kjv-text 4.38 (data) and bible-kjv 4.38 (the reader that decompresses
# it), one verse per line. 4,298,239 characters, 73 distinct; sha256
# 6f74f5589333c56c263963e6347dba662bae2d96861302e690aaae0b4a855eda.
#   sh benchmarks/kjv_corpus.sh /tmp/corpus    # writes /tmp/corpus/kjv.txt
set -eu
out=${1:-/tmp/corpus}
mkdir -p "$out" && cd "$out"
apt-get download bible-kjv-text=4.38 bible-kjv=4.38
dpkg -x bible-kjv-text_4.38_all.deb x
dpkg -x bible-kjv_4.38_*.deb b
b/usr/bin/bible -l1000 -p x/usr/lib "Gen1:1-Rev22:21" > kjv.txt
sha256sum kjv.txt
