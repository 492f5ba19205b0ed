"""cryoflow.kernels"""
