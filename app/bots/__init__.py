"""`lpstudy bots`: simulated participants that walk a running server's real HTTP forms (as oTree's bots do)."""
