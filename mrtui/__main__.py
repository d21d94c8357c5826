from mrtui.cli import main

main()
