"""Evaluation paths: one way each of turning plans into verdicts, behind one interface.

- ``candidate``: the plan rewritten into the model the user deploys, a session, a run;
- ``switchboard``: one prebuilt model with the plan as an input (its form, batch, CUDA
  graph chosen at start-up from measured costs).

The TensorRT engine and the board over SSH are the same candidate path on another backend
(``candidates/backends``, ``boards/``). ``choices`` holds every choice between and inside
paths as a pure function of measured costs, so each is tested on given numbers.
distprec/evaluator.py holds the paths of one worker and hands plans to the cheaper one.
"""
