from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from . import selectors
from .models import Line


@login_required
def home(request):
    return render(request, "accounts/home.html", {"lines": selectors.lines_for_user(request.user)})


@login_required
def line_detail(request, line_id: int):
    try:
        line = selectors.line_for_user(request.user, line_id)
    except Line.DoesNotExist:
        raise Http404
    return render(request, "accounts/line_detail.html", {"line": line})
