"""reidsim: how quickly do "anonymized" location pings become identifiable people?

The package is a one-way pipeline of plain functions over tables::

    world -> population -> generate -> release -> infer -> attacks -> metrics -> report

See README.md and docs/CONTRACTS.md.
"""
__version__ = "0.1.0"
