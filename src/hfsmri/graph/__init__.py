"""hfsmri.graph"""
