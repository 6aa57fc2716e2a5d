"""Production deployment on Flower's runtime: PKI, launch flags, connections, enrollment."""
