"""The narrowing method's parts; :mod:`refiner.narrowing` puts them in order.

``constants`` holds every number of the method, ``settings`` the tunable ones, ``evidence`` what
the steps read, ``steps`` the steps themselves (pure functions returning data), ``reasons`` the
wording of every decision, ``decide`` the per-parameter decisions built from both, ``conditions``
and ``follow`` the two whole-space passes, and ``bounds`` the range arithmetic (shared with the
audit).
"""
