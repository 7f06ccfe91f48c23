"""hfsmri.anat"""
