"""exec/raytune"""
