"""The plan's stages, each declared once in its module (`STAGE = Stage(...)`); declaring
them imports no torch: each stage imports its machinery when it runs.
"""
