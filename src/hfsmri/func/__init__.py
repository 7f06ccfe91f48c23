"""hfsmri.func"""
