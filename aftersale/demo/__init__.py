"""The synthetic shop and simulated customers behind `aftersale demo`."""
