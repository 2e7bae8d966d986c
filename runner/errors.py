"""Errors a user can cause. The CLI prints their message (one sentence that says what to do) instead of a
traceback and exits with status 2."""


class HooptError(Exception):
    """A problem with the user's input or environment, worded as advice."""
