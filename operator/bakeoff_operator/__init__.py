"""Bakeoff operator: custom resources, planning, kopf handlers, local bake-offs and the CLI."""
