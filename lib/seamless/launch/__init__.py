"""Starting and finding services: status files, ports, executors (local and ssh)."""
