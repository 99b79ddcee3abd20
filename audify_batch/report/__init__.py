"""What people read: the HTML run report, ``explain`` pages, and the HTML helpers they share."""
