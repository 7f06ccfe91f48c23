"""hfsmri.dwi"""
