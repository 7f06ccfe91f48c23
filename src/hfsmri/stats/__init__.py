"""hfsmri.stats"""
