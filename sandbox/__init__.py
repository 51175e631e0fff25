"""Local, stateful emulators of the vendor APIs RevBridge talks to. Imports nothing of RevBridge."""
