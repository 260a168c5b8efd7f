"""`python -m app.cli ...` (the demo starts its worker this way): the same command as `lpstudy`."""

from app.cli import main

if __name__ == "__main__":
    main()
