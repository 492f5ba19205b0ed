"""cryoflow.graph"""
