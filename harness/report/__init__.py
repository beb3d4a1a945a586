"""From records to what people read: the summary, terminal tables, report.html, the verdict and `recommend`."""
