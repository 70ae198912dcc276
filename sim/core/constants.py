"""Constants shared by every stage: zone levels and the length of a day."""

#: Zone levels of a World, finest first and nested (docs/CONTRACTS.md).
LEVELS = ("building", "block", "tract", "district")
#: The polygon levels (a building is a point, not a zone).
ZONE_LEVELS = ("block", "tract", "district")


#: Seconds in a day (local days are fixed-offset: no DST).
DAY_S = 86400


