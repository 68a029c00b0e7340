"""The node's estimator (firmware/rnfw/estimator.py) held against truth on the host: the golden model
(the firmware's own pipeline under CPython), the float64 reference of its method, the Golden Car table
it is generated with, fitting a vehicle's settings (`roadnode calibrate`) and accuracy reports."""
