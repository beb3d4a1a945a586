"""Scorers read a record's answer and provenance and add their marks."""
