"""Writers behind the night recorder: EDF segments, the stages EDF+ file, CSVs, manifest."""
