"""Helpers shared by the test tiers (test process, unless a module says otherwise).

Test modules import from here and from framepool, never from each other. Modules that need the dev-server
extra (aiortc) say so; the unit tier imports none of them.
"""
