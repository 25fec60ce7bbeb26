"""What talks to clusters rather than training.

connect, auth, the dev cluster, jobs, manifests, monitor, reports.
"""
