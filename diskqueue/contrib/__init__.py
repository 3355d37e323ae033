"""Adapters that let other task frameworks run on a diskqueue directory."""
