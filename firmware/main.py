# roadnode node: start measuring. Ctrl-C at the console stops it and gives the REPL.
from rnfw import app

app.main()
