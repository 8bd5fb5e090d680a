"""Run-time support shared by every target: input validation and random inputs."""
