"""Readings: one file each, registered once; each turns results into one section of the report."""
