"""cryoflow.models"""
