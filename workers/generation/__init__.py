"""Making stimulus sets: a study's set in a folder (``make.py``, ``cli.py``) and the database job worker
(``runner.py``, ``queue.py``)."""
