"""Reading Hubble flows: every JSON form Hubble writes, files, stdin, gzip, follow."""
