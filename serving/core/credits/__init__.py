"""Charging: reserve before any work, capture per delivered image, release the rest."""
