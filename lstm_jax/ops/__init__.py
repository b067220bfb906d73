"""The LSTM as pure functions: the step, the reference scan, the tensor-parallel gate view,
regularisation masks, softmax helpers."""
