"""The LSTM as pure functions: the step, the reference scan, the dispatcher, regularisation masks."""
