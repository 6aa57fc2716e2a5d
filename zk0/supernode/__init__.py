"""zk0's SuperNode: Flower's SuperNode with a warm ClientApp pool (``zk0-supernode``)."""
