# Firmware copied at the root by hand earlier (/rnfw): unused once a slot is active, removed.
import os

for e in os.listdir('/rnfw'):
    os.remove('/rnfw/' + e)
os.rmdir('/rnfw')
