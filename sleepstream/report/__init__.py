"""The morning report: sleep statistics, the night's figure and agreement with a reference."""
