"""Edits: instruct, replace, recreate and erase on an image or an asset (native), OpenAI's
edits and variations; every result goes through the one paid path."""
