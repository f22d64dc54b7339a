"""Tests of the app; run with: python3 -m unittest"""
