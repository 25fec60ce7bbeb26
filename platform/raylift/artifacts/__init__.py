"""What runs leave on storage: exports, sealed folders, checkpoints, run records.

The contract between training, tuning and serving; imports none of them.
"""
