import time, jax, jax.numpy as jnp, numpy as np
from lstm_jax import pallas_lstm
import tests.pallas_test as t
params, xs, c0 = t._inputs(jax.random.key(0))
def loss(p, xs, c0):
  ys, c = pallas_lstm.lstm_scan_pallas(p, xs, mask=t.MASK, initial_carry=c0, **t.TPU)
  return jnp.sum(ys) + jnp.sum(c.c)
g = jax.jit(jax.grad(loss, argnums=(0,1,2)))
t0=time.time(); tr = g.trace(params, xs, c0); t1=time.time()
lo = tr.lower(); t2=time.time(); co = lo.compile(); t3=time.time()
jax.block_until_ready(co(params, xs, c0)); t4=time.time()
print(f"trace {t1-t0:.1f} lower {t2-t1:.1f} compile {t3-t2:.1f} run {t4-t3:.1f}")
print(len(lo.as_text()))
