"""Moved: HLS table placement is a stage of the hls target, ``xrec.targets.hls.placement``.

This empty module remains only because ``compiler/passes/__init__.py`` still
imports ``place_tables``; delete it together with that name in the import line.
"""
