"""cryoflow.simulate"""
