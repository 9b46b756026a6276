"""The pipeline: the stages the checking commands compose (stages), and the
commands built on running it several times or around it: the matrix of
bases, the bench, the CI file and cleaning the work dir.
"""
