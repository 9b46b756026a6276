"""The pipeline: the stages every command composes (stages), and the
commands built on running it several times or around it: the matrix of
bases, the bench, the CI file and cleaning the work dir.
"""
