"""About 40 MB of state built at import, as an app builds its caches and lookup tables at boot:
distinct strings and ints (distinct, so that nothing but the pages' sameness across processes
could let them be shared)."""

N = 400_000

WORDS = ["entry-%07d" % i for i in range(N)]
NUMBERS = [1_000_000_007 + 7 * i for i in range(N)]
