"""cryoflow.io"""
