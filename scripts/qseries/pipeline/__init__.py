"""The pipeline: the stages, declared as a graph (graph), the run that
executes them on a series (stages), every command as the stages it asks
for (commands) and what it found as text or JSON (views); and what the
commands run around it: the matrix of bases, the bench, the CI file,
cleaning the work dir, a lab's options and stages (lab).
"""
