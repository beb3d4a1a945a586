"""From records to what people read: summary tables, files, and (later) the HTML report and verdict."""
