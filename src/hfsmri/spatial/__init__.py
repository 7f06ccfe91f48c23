"""hfsmri.spatial"""
