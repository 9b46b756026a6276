"""Mail: a series as a thread on a list.

Reading a mailed thread with b4 (mbox, with mailprobe bounding each
mail), the trailers replies give, and handing a series over for sending.
The mail model itself is qseries.core.mail.
"""
